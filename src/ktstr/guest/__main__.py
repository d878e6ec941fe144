from ktstr.guest.agent import main

main()
